//! Transaction gossip: the framing of a batch of transactions (one gossip message, and the body of
//! `POST /v1/txs`), and the two tasks of a node's gossip — a batcher that sends whatever was
//! admitted locally since its last message in one message, and a receiver that admits peers'
//! batches.

use super::{config::PublicKey, handle::admit, state::Shared};
use crate::Application;
use bytes::Bytes;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::Spawner;
use commonware_utils::sync::Mutex;
use futures::{StreamExt as _, channel::mpsc};
use std::sync::Arc;

/// Most transactions in one gossip message (and in one `POST /v1/txs`).
pub const GOSSIP_BATCH_TXS: usize = 1024;
/// Bytes after which a gossip batch is sent without taking more.
const GOSSIP_BATCH_BYTES: usize = 1 << 20;

/// Bytes of one length or count word of the framing.
const WORD: usize = 4;

/// Encodes transactions for one gossip message (and the body of `POST /v1/txs`): `u32 count`,
/// then `u32 length | bytes` each, big-endian.
pub fn encode_tx_batch(txs: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(WORD + txs.iter().map(|t| WORD + t.len()).sum::<usize>());
    out.extend_from_slice(&(txs.len() as u32).to_be_bytes());
    for tx in txs {
        out.extend_from_slice(&(tx.len() as u32).to_be_bytes());
        out.extend_from_slice(tx);
    }
    Bytes::from(out)
}

/// Decodes a gossip message; `None` if it is malformed, holds too many transactions or one
/// longer than `max_tx_bytes`.
pub fn decode_tx_batch(msg: &[u8], max_tx_bytes: usize) -> Option<Vec<Bytes>> {
    let word = |at: usize| -> Option<usize> {
        msg.get(at..at.checked_add(WORD)?)
            .and_then(|b| <[u8; WORD]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
    };
    let count = word(0)?;
    if count > GOSSIP_BATCH_TXS {
        return None;
    }
    let mut at = WORD;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = word(at)?;
        if len > max_tx_bytes {
            return None;
        }
        let start = at.checked_add(WORD)?;
        let end = start.checked_add(len)?;
        out.push(Bytes::copy_from_slice(msg.get(start..end)?));
        at = end;
    }
    (at == msg.len()).then_some(out)
}

/// Starts a node's transaction gossip on its `txs` channel and returns the function that queues a
/// locally admitted transaction for sending.
///
/// Sending is in batches: whatever was submitted since the last message goes out in one (no
/// waiting for a batch to fill, so an idle node adds no latency; under load one message carries
/// hundreds of transactions).
pub(super) fn start<E, A, S, R>(
    context: &E,
    shared: Arc<Mutex<Shared<A>>>,
    max_tx_bytes: usize,
    (sender, receiver): (S, R),
) -> Arc<dyn Fn(Bytes) + Send + Sync>
where
    E: Spawner,
    A: Application,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    context
        .child("tx_gossip")
        .spawn(move |_| receive(receiver, shared, max_tx_bytes));
    let (batch_in, batch_out) = mpsc::unbounded::<Bytes>();
    context
        .child("tx_batcher")
        .spawn(move |_| send_batches(batch_out, sender));
    Arc::new(move |tx: Bytes| {
        let _ = batch_in.unbounded_send(tx);
    })
}

/// Admits every batch peers send. A peer's malformed batch is dropped whole; refusals of single
/// transactions are expected (duplicates via several peers, races with finality).
async fn receive<A: Application, R: Receiver<PublicKey = PublicKey>>(
    mut receiver: R,
    shared: Arc<Mutex<Shared<A>>>,
    max_tx_bytes: usize,
) {
    while let Ok((_, msg)) = receiver.recv().await {
        let batch = decode_tx_batch(msg.as_ref(), max_tx_bytes).unwrap_or_default();
        let _ = admit(&shared, &batch, max_tx_bytes);
    }
}

/// Sends queued transactions to all peers, as many as are waiting (up to a batch) per message.
async fn send_batches<S: Sender<PublicKey = PublicKey>>(
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    mut sender: S,
) {
    while let Some(first) = queue.next().await {
        let mut bytes = first.len();
        let mut batch = vec![first];
        while batch.len() < GOSSIP_BATCH_TXS && bytes < GOSSIP_BATCH_BYTES {
            match queue.try_recv() {
                Ok(tx) => {
                    bytes += tx.len();
                    batch.push(tx);
                }
                Err(_) => break,
            }
        }
        let _ = sender.send(Recipients::All, encode_tx_batch(&batch), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_batches_round_trip_and_refuse_malformed_messages() {
        let txs = vec![
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let msg = encode_tx_batch(&txs);
        assert_eq!(decode_tx_batch(&msg, 300), Some(txs.clone()));
        assert_eq!(decode_tx_batch(&msg, 299), None, "a tx over the limit");
        assert_eq!(
            decode_tx_batch(&msg[..msg.len() - 1], 300),
            None,
            "truncated"
        );
        let mut longer = msg.to_vec();
        longer.push(0);
        assert_eq!(decode_tx_batch(&longer, 300), None, "trailing bytes");
        assert_eq!(decode_tx_batch(b"", 300), None);
        let too_many = ((GOSSIP_BATCH_TXS + 1) as u32).to_be_bytes();
        assert_eq!(decode_tx_batch(&too_many, 300), None);
    }
}
