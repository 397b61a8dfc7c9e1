// The peer of `make bench-e2e`: node-oidc-provider serving the flow
// cmd/loadgen drives against authority-host, as close to examples/authority.yaml's
// demo-dpop client as the provider allows: client_credentials with
// client_secret_basic, DPoP required with server nonces (RFC 9449 §8), ES256
// proofs only, and ES256-signed JWT access tokens (RFC 9068) for demo-api.
// No persistence adapter: the provider's in-memory one (as our memory stores).
//
//   node server.mjs [port]     (issuer http://127.0.0.1:<port>, default 8090)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? 8090);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [key] },
  clients: [{
    client_id: 'demo-dpop',
    client_secret: 'demo-dpop-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256', // the only key is ES256
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'demo.read',
  }],
  scopes: ['demo.read'],
  ttl: { ClientCredentials: 300 }, // accessTokenLifetime: 5m, as in examples/authority.yaml
  enabledJWA: { dPoPSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:demo-api', // resource indicators are absolute URIs (RFC 8707 §2)
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'demo.read',
        audience: 'urn:demo-api',
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.listen(port, '127.0.0.1', () => console.error(`oidc-provider ${issuer}`));
