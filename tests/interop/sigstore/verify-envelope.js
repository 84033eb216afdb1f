// Verifies a provsign DSSE envelope with the sigstore JavaScript verifier
// (@sigstore/verify 3.x, pinned by package-lock.json), given only the
// envelope and the signer's public key: nothing of provsign's code runs.
//
//   node verify-envelope.js ENVELOPE.json PUBLIC-KEY.pem
//
// The envelope goes into a sigstore bundle (v0.3) whose verification
// material is a public key named by the envelope's keyid; the trust
// material maps that keyid to the key. No transparency log, CT log or
// timestamp is required (thresholds 0): provsign's own log and receipts
// stand in for them, and are checked by `provsign verify`. Exit 0 and
// "verified" when the signature over the DSSE PAE holds; exit 1 and the
// verifier's error otherwise.
'use strict';

const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function main(argv) {
  if (argv.length !== 2) {
    console.error('usage: node verify-envelope.js ENVELOPE.json PUBLIC-KEY.pem');
    return 2;
  }
  const envelope = JSON.parse(fs.readFileSync(argv[0], 'utf8'));
  const pem = fs.readFileSync(argv[1], 'utf8');
  const keyid = envelope.signatures[0].keyid;

  const bundle = bundleFromJSON({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: {
      publicKey: { hint: keyid },
      tlogEntries: [],
      timestampVerificationData: { rfc3161Timestamps: [] },
    },
    dsseEnvelope: envelope,
  });
  const trust = toTrustMaterial(
    { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
    { [keyid]: { rawBytes: pem } }
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  try {
    verifier.verify(toSignedEntity(bundle));
  } catch (e) {
    console.error(`not verified: ${e.code || ''} ${e.message}`);
    return 1;
  }
  const version = require('@sigstore/verify/package.json').version;
  console.log(`verified by @sigstore/verify ${version}: keyid ${keyid}, payloadType ${envelope.payloadType}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
