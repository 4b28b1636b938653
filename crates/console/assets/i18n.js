// Every string of the console, in English and Simplified Chinese. Dates and numbers go through
// Intl in the chosen locale. The choice is per user (kept in this browser).

const STRINGS = {
  en: {
    app_title: "medspace — patient portal",
    skip: "Skip to the content",
    nav_label: "Main",
    nav_consents: "My decisions",
    nav_grants: "Access codes",
    nav_log: "Who used my data",
    language: "Language",
    sign_out: "Sign out",
    genesis_ok: "This node serves the consortium you expected (genesis {hash}).",
    genesis_bad: "Stop: this node serves a different consortium than the address you opened promised. Do not sign in here.",
    genesis_unpinned: "Compare this fingerprint with the one your consortium published before you sign in: {hash}",
    signin_title: "Sign in with your wallet",
    signin_intro: "Your key stays in this browser. It is never sent to the node; every request is signed here.",
    wallet_file: "Wallet file",
    wallet_text: "Or paste the wallet's contents",
    signin: "Sign in",
    new_wallet: "Create a new wallet",
    new_wallet_hint: "A new key is made in this browser. Save the file somewhere safe: whoever has it can act as you. A hospital must then register it.",
    new_wallet_save: "Save the new wallet file",
    wallet_malformed: "This is not a medspace wallet file. Choose the file that `medspace patient wallet` made.",
    wallet_mismatch: "This wallet is damaged: its pseudonym does not match its key.",
    signed_in_as: "Signed in as {who}",
    consents_title: "What waits for my decision",
    invitations_none: "No study is waiting for your decision.",
    invitation: "Study {study}",
    invitation_by: "Asked by {who} for {purpose}.",
    allow: "Allow",
    decline: "Decline",
    decided_allow: "You allowed this study.",
    decided_deny: "You declined this study.",
    general_title: "My consent for each purpose",
    purpose_col: "Purpose",
    state_col: "Your answer",
    since_col: "Since block",
    action_col: "Change",
    state_allow: "allowed",
    state_deny: "declined",
    state_revoked: "withdrawn",
    state_none: "not asked yet",
    l4_label: "Also allow highly sensitive data (genetics, mental health) for research",
    saving: "Signing and waiting for the ledger…",
    saved: "Done: the ledger has your decision.",
    grants_title: "Give a hospital access to my records",
    grantee: "Who may read",
    holder: "Hospital that holds the records",
    purpose: "Why",
    days: "Valid for (days)",
    types: "Which records",
    issue: "Create the access code",
    code_title: "Your access code",
    code_hint: "Give this code or show the QR code to {who}. It works once the ledger has it and until you revoke it.",
    copy: "Copy the code",
    copied: "Copied.",
    qr_label: "QR code of the access code",
    grants_list: "My access codes",
    grants_none: "You have not given anyone access.",
    grant_row: "{grantee} may read {types} held by {holder}",
    grant_uses: "used {n} times",
    grant_revoked: "revoked",
    grant_active: "active",
    revoke: "Revoke",
    log_title: "Who used my data",
    log_intro: "Every entry below is checked in this browser against a block the consortium's validators signed. The node's word is not taken.",
    log_none: "Nothing has happened to your data yet.",
    verified: "verified",
    not_verified: "not verified",
    block_ok: "Block {height} — signed by a quorum of the {n} validators.",
    block_bad: "The block could not be verified: the entries below are not proven.",
    ev_consent: "Consent for {purpose}{study}: {state}",
    ev_study: " (study {study})",
    ev_grant_issued: "You created access code {id}",
    ev_grant_revoked: "You revoked access code {id}",
    ev_accessed: "{recipient} received {count} records from {holder} ({types})",
    ev_accessed_unknown: "Records were delivered ({id})",
    ev_destroyed: "A delivered copy was destroyed ({id})",
    when_col: "When",
    what_col: "What happened",
    proof_col: "Proof",
    refused_403: "This is not yours to see. You can only see your own records; sign in with your own wallet.",
    refused_401: "Your signature was not accepted. Check this computer's clock, then sign in again.",
    refused_404: "Nothing was found.",
    refused_429: "Too many requests at once. Wait a moment and try again.",
    refused_other: "The node could not answer right now. Try again in a moment.",
    refused_tx: "The ledger did not accept this: {reason}",
    not_registered: "This wallet is not registered yet. Ask your hospital to register it, then sign in again.",
    verification_failed: "The node's answer could not be verified, so it is not shown.",
    loading: "Loading…",
    p_treatment: "treatment",
    p_patient_access: "your own access",
    p_research: "research",
    p_teaching: "teaching",
    p_insurance_claim: "insurance claims",
    p_public_health: "public health",
    p_drug_safety: "drug safety",
    p_quality_management: "quality management",
    t_Encounter: "visits",
    t_Condition: "diagnoses",
    t_Observation: "measurements",
    t_MedicationRequest: "prescriptions",
  },
  zh: {
    app_title: "medspace — 患者门户",
    skip: "跳到主要内容",
    nav_label: "主导航",
    nav_consents: "我的决定",
    nav_grants: "授权码",
    nav_log: "谁使用了我的数据",
    language: "语言",
    sign_out: "退出",
    genesis_ok: "此节点属于您预期的联盟（创世文件 {hash}）。",
    genesis_bad: "请停止：此节点所属的联盟与您打开的地址所承诺的不同。请勿在此登录。",
    genesis_unpinned: "登录前，请将此指纹与您的联盟公布的指纹核对：{hash}",
    signin_title: "用您的钱包登录",
    signin_intro: "您的密钥只保存在此浏览器中，从不发送给节点；每个请求都在这里签名。",
    wallet_file: "钱包文件",
    wallet_text: "或粘贴钱包内容",
    signin: "登录",
    new_wallet: "创建新钱包",
    new_wallet_hint: "新密钥在此浏览器中生成。请妥善保存该文件：持有它的人可以代表您行事。之后须由医院为其登记。",
    new_wallet_save: "保存新钱包文件",
    wallet_malformed: "这不是 medspace 钱包文件。请选择 `medspace patient wallet` 生成的文件。",
    wallet_mismatch: "此钱包已损坏：其假名与密钥不符。",
    signed_in_as: "已登录：{who}",
    consents_title: "等待我决定的事项",
    invitations_none: "目前没有等待您决定的研究。",
    invitation: "研究 {study}",
    invitation_by: "由 {who} 为{purpose}提出。",
    allow: "同意",
    decline: "拒绝",
    decided_allow: "您已同意此研究。",
    decided_deny: "您已拒绝此研究。",
    general_title: "我对各用途的同意",
    purpose_col: "用途",
    state_col: "您的回答",
    since_col: "自区块",
    action_col: "更改",
    state_allow: "已同意",
    state_deny: "已拒绝",
    state_revoked: "已撤回",
    state_none: "尚未询问",
    l4_label: "研究也可使用高度敏感的数据（基因、精神健康）",
    saving: "正在签名并等待账本确认…",
    saved: "完成：账本已记录您的决定。",
    grants_title: "允许医院查看我的记录",
    grantee: "谁可以查看",
    holder: "保存记录的医院",
    purpose: "用途",
    days: "有效期（天）",
    types: "哪些记录",
    issue: "生成授权码",
    code_title: "您的授权码",
    code_hint: "请将此授权码交给{who}或出示二维码。账本记录后即生效，直到您撤销为止。",
    copy: "复制授权码",
    copied: "已复制。",
    qr_label: "授权码的二维码",
    grants_list: "我的授权码",
    grants_none: "您尚未授权任何人查看。",
    grant_row: "{grantee} 可查看 {holder} 保存的{types}",
    grant_uses: "已使用 {n} 次",
    grant_revoked: "已撤销",
    grant_active: "有效",
    revoke: "撤销",
    log_title: "谁使用了我的数据",
    log_intro: "以下每条记录都在此浏览器中根据联盟验证节点签署的区块进行核验，不轻信节点的说法。",
    log_none: "您的数据尚无任何记录。",
    verified: "已验证",
    not_verified: "未验证",
    block_ok: "区块 {height} — 已由 {n} 个验证节点中的法定多数签署。",
    block_bad: "无法验证该区块：以下记录未获证明。",
    ev_consent: "{purpose}{study}的同意：{state}",
    ev_study: "（研究 {study}）",
    ev_grant_issued: "您生成了授权码 {id}",
    ev_grant_revoked: "您撤销了授权码 {id}",
    ev_accessed: "{recipient} 从 {holder} 收到 {count} 条记录（{types}）",
    ev_accessed_unknown: "记录已交付（{id}）",
    ev_destroyed: "一份已交付的副本已销毁（{id}）",
    when_col: "时间",
    what_col: "发生了什么",
    proof_col: "证明",
    refused_403: "您无权查看此内容。您只能查看自己的记录；请用您自己的钱包登录。",
    refused_401: "您的签名未被接受。请检查此电脑的时钟，然后重新登录。",
    refused_404: "未找到任何内容。",
    refused_429: "请求过多。请稍候再试。",
    refused_other: "节点暂时无法回答。请稍后再试。",
    refused_tx: "账本未接受此操作：{reason}",
    not_registered: "此钱包尚未登记。请让您的医院为其登记，然后重新登录。",
    verification_failed: "无法验证节点的回答，因此不予显示。",
    loading: "加载中…",
    p_treatment: "治疗",
    p_patient_access: "本人查阅",
    p_research: "科研",
    p_teaching: "教学",
    p_insurance_claim: "保险理赔",
    p_public_health: "公共卫生",
    p_drug_safety: "药品安全",
    p_quality_management: "质量管理",
    t_Encounter: "就诊",
    t_Condition: "诊断",
    t_Observation: "检查结果",
    t_MedicationRequest: "处方",
  },
};

export const LOCALES = { en: "English", zh: "中文（简体）" };

let locale = localStorage.getItem("medspace.locale") || (navigator.language.startsWith("zh") ? "zh" : "en");
if (!STRINGS[locale]) locale = "en";

export function getLocale() {
  return locale;
}

export function setLocale(l) {
  if (STRINGS[l]) {
    locale = l;
    localStorage.setItem("medspace.locale", l);
  }
}

/// The string `key` in the current locale, `{name}` replaced from `vars`.
export function t(key, vars = {}) {
  const s = STRINGS[locale][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? "" : String(vars[k])));
}

export function intlTag() {
  return locale === "zh" ? "zh-CN" : "en-GB";
}

export function date(ms) {
  return new Intl.DateTimeFormat(intlTag(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(Number(ms)));
}

export function number(n) {
  return new Intl.NumberFormat(intlTag()).format(Number(n));
}

export function list(items) {
  return new Intl.ListFormat(intlTag(), { style: "long", type: "conjunction" }).format(items);
}

/// Both tables have the same keys (checked by the console's tests).
export function keys(l) {
  return Object.keys(STRINGS[l]);
}
