// Key generation and token forging for the broker's HTTP tests, with
// node:crypto only (no JWT library, so nothing refuses to build the bad
// tokens we need).
//
//   node forge.mjs keys OUT.json
//       Writes a private JWKS: RSA "rs-1" (RS256), P-256 "es-1" (ES256),
//       Ed25519 "ed-1" (EdDSA). The provider publishes their public halves.
//
//   node forge.mjs sign KEYS.json SPEC.json
//       SPEC is a list of {name, mode, claims, tamper?, typ?}; prints one
//       JSON object {name: token}. The header's typ is "at+jwt" unless the
//       spec sets `typ` (null leaves it out). Modes:
//         RS256 | ES256 | EdDSA   signed with the provider's key of that type
//         none                    alg "none", empty signature
//         hs256-pubkey            HS256 with the RSA public key (PEM) as secret
//         tampered                RS256, then the payload replaced by `tamper`
//         rogue                   RS256 with a fresh key, kid "rogue-1"
//         es256-rsa-kid           ES256 signature, header naming the RSA key

import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const b64 = (data) => Buffer.from(data).toString('base64url');
const json = (value) => b64(JSON.stringify(value));

function makeKeys(out) {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const ed = generateKeyPairSync('ed25519').privateKey;
  const keys = [
    { ...rsa.export({ format: 'jwk' }), kid: 'rs-1', alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: 'es-1', alg: 'ES256', use: 'sig' },
    { ...ed.export({ format: 'jwk' }), kid: 'ed-1', alg: 'EdDSA', use: 'sig' },
  ];
  writeFileSync(out, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
}

function signWith(alg, key, input) {
  switch (alg) {
    case 'RS256':
      return sign('sha256', Buffer.from(input), key);
    case 'ES256':
      return sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA':
      return sign(null, Buffer.from(input), key);
    default:
      throw new Error(`cannot sign ${alg}`);
  }
}

function jws(header, claims, alg, key) {
  const input = `${json(header)}.${json(claims)}`;
  return `${input}.${b64(signWith(alg, key, input))}`;
}

function forge(jwks, spec) {
  const byKid = Object.fromEntries(
    jwks.keys.map((jwk) => [jwk.kid, createPrivateKey({ key: jwk, format: 'jwk' })]),
  );
  const kidFor = { RS256: 'rs-1', ES256: 'es-1', EdDSA: 'ed-1' };
  const typ = 'typ' in spec ? spec.typ : 'at+jwt';
  const header = (alg, kid) => (typ === null ? { alg, kid } : { alg, kid, typ });
  const { mode, claims } = spec;
  switch (mode) {
    case 'RS256':
    case 'ES256':
    case 'EdDSA':
      return jws(header(mode, kidFor[mode]), claims, mode, byKid[kidFor[mode]]);
    case 'none':
      return `${json(header('none', 'rs-1'))}.${json(claims)}.`;
    case 'hs256-pubkey': {
      const secret = createPublicKey(byKid['rs-1']).export({ type: 'spki', format: 'pem' });
      const input = `${json(header('HS256', 'rs-1'))}.${json(claims)}`;
      return `${input}.${b64(createHmac('sha256', secret).update(input).digest())}`;
    }
    case 'tampered': {
      const [head, , sig] = jws(header('RS256', 'rs-1'), claims, 'RS256', byKid['rs-1']).split('.');
      return `${head}.${json(spec.tamper)}.${sig}`;
    }
    case 'rogue': {
      const rogue = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      return jws(header('RS256', 'rogue-1'), claims, 'RS256', rogue);
    }
    case 'es256-rsa-kid':
      return jws(header('ES256', 'rs-1'), claims, 'ES256', byKid['es-1']);
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'keys' && rest.length === 1) {
  makeKeys(rest[0]);
} else if (command === 'sign' && rest.length === 2) {
  const jwks = JSON.parse(readFileSync(rest[0], 'utf8'));
  const specs = JSON.parse(readFileSync(rest[1], 'utf8'));
  const out = {};
  for (const spec of specs) {
    out[spec.name] = forge(jwks, spec);
  }
  console.log(JSON.stringify(out));
} else {
  console.error('usage: node forge.mjs keys OUT | node forge.mjs sign KEYS SPEC');
  process.exit(2);
}
