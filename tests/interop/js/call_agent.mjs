// Drive @a2a-js/sdk's client against an agent by its card URL: verify the card's signature
// (its jku's keys, fetched with jose), send one message, print one JSON line with the outcome.
// Usage: node call_agent.mjs CARD_URL TEXT [--wrong-key]  (--wrong-key: verify against a key that did not sign)
import { ClientFactory } from "@a2a-js/sdk/client";
import { verifyAgentCardSignature, Role } from "@a2a-js/sdk";
import * as jose from "jose";

const [cardUrl, text, mode] = process.argv.slice(2);

async function publicKey(kid, jku) {
  if (mode === "--wrong-key") return (await jose.generateKeyPair("ES256")).publicKey;
  const jwks = await (await fetch(jku)).json();
  const jwk = jwks.keys.find((key) => key.kid === kid);
  if (!jwk) throw new Error(`no key ${kid} at ${jku}`);
  return jose.importJWK(jwk, jwk.alg);
}

const client = await new ClientFactory().createFromUrl(cardUrl, "");
const card = await client.getAgentCard(undefined, verifyAgentCardSignature(publicKey));
const result = await client.sendMessage({
  message: { messageId: crypto.randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: "text", value: text } }] },
});
console.log(JSON.stringify({ verified: card.name, result }));
