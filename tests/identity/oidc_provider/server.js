// An independent OpenID provider for the identity tests: panva's oidc-provider, started on
// loopback by tests/identity/test_external_op.py. Client credentials with resource
// indicators issue RFC 9068 JWT access tokens (ES256) for the requested audience.
//   node server.js PORT    (env OP_JWKS: a private JWK set; OP_AUDIENCE: default resource)
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const audience = process.env.OP_AUDIENCE;
const jwks = JSON.parse(process.env.OP_JWKS);
const orgOf = { 'hrss-system': 'hrss-org', 'stranger-system': 'unmapped-org', 'hrss-kiosk': 'hrss-org' };
// a kiosk account whose roles allow no scope of ours (tests the external scope rule)
const rolesOf = { 'hrss-kiosk': ['enterprise_user'] };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks,
  clients: Object.keys(orgOf).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })),
  scopes: ['share:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'share:read',
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => ({
    org: orgOf[token.clientId],
    roles: rolesOf[token.clientId] || ['developer'],
  }),
});
provider.listen(port, '127.0.0.1', () => console.log('ready'));
