// Checking a card's signatures in the browser, with WebCrypto, against the gateway's JWKS.
//
// A card signature is a JWS with a detached payload: the RFC 8785 (JCS) canonical JSON of the
// card without its "signatures" member. JCS is what JSON.stringify writes once every object's
// members are sorted by their UTF-16 code units (ECMAScript's number and string forms are the
// ones JCS specifies), so the payload is rebuilt here from the card as served.

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const names = Object.keys(value).sort();
    return `{${names.map((name) => `${JSON.stringify(name)}:${canonical(value[name])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

const ALGORITHMS = {
  ES256: { importAs: { name: "ECDSA", namedCurve: "P-256" }, verifyAs: { name: "ECDSA", hash: "SHA-256" } },
  EdDSA: { importAs: { name: "Ed25519" }, verifyAs: { name: "Ed25519" } },
};

/**
 * The state of `card`'s signatures against `jwks`: {state, kid, alg, detail}. `state` is
 * "verified" (a signature checks out with a published key), "invalid" (none does),
 * "unknown-key" (no published key has its kid), "unverifiable" (this browser's WebCrypto lacks the
 * algorithm, e.g. Ed25519 in an older browser) or "unsigned".
 */
export async function checkCard(card, jwks) {
  const signatures = Array.isArray(card.signatures) ? card.signatures : [];
  if (!signatures.length) return { state: "unsigned", kid: "", alg: "", detail: "the card carries no signature" };
  const { signatures: _, ...unsigned } = card;
  const payload = base64url(new TextEncoder().encode(canonical(unsigned)));
  let last = { state: "invalid", kid: "", alg: "", detail: "no signature verified" };
  for (const entry of signatures) {
    let header;
    try {
      header = JSON.parse(new TextDecoder().decode(fromBase64url(entry.protected)));
    } catch {
      last = { state: "invalid", kid: "", alg: "", detail: "a signature's protected header is not base64url JSON" };
      continue;
    }
    const { alg, kid } = header;
    const algorithm = ALGORITHMS[alg];
    const jwk = (jwks.keys || []).find((key) => key.kid === kid);
    if (!algorithm) {
      last = { state: "invalid", kid, alg, detail: `algorithm ${alg} is not accepted` };
      continue;
    }
    if (!jwk) {
      last = { state: "unknown-key", kid, alg, detail: `no key ${kid} in the gateway's JWKS` };
      continue;
    }
    try {
      const key = await crypto.subtle.importKey("jwk", jwk, algorithm.importAs, false, ["verify"]);
      const input = new TextEncoder().encode(`${entry.protected}.${payload}`);
      const ok = await crypto.subtle.verify(algorithm.verifyAs, key, fromBase64url(entry.signature), input);
      if (ok) return { state: "verified", kid, alg, detail: `verified in this browser with key ${kid} (${alg})` };
      last = { state: "invalid", kid, alg, detail: `the signature by key ${kid} does not match the card` };
    } catch (error) {
      last = { state: "unverifiable", kid, alg, detail: `this browser could not check ${alg}: ${error.message || error}` };
    }
  }
  return last;
}
