// A real OpenID provider (the certified `oidc-provider` package) for the
// broker's HTTP tests. Test only: plain HTTP on loopback, fixed clients.
//
//   node provider.mjs --port 4444 --resource http://127.0.0.1:5555/mcp --keys keys.json
//
// Issuer: http://127.0.0.1:<port>. Every client uses the client_credentials
// grant, so the token's `sub` is the client id; each one stands for a test
// user and gets its tokens signed with its own algorithm:
//
//   alice  RS256  groups ["team-a"]
//   bob    ES256  groups ["team-b"]
//   carol  EdDSA  groups []            (in no group)
//   dave   RS256  no groups claim at all
//
// Client secret: "<client id>-secret". Access tokens are JWTs for the
// resource given with --resource (RFC 8707), scope "mcp", 5 minutes.
// Every request is logged to stdout as "<METHOD> <path> <status>".

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    resource: { type: 'string' },
    keys: { type: 'string' },
  },
});
if (!args.port || !args.resource || !args.keys) {
  console.error('usage: node provider.mjs --port N --resource URL --keys FILE');
  process.exit(2);
}

const USERS = {
  alice: { alg: 'RS256', groups: ['team-a'] },
  bob: { alg: 'ES256', groups: ['team-b'] },
  carol: { alg: 'EdDSA', groups: [] },
  dave: { alg: 'RS256' },
};

const issuer = `http://127.0.0.1:${args.port}`;
const jwks = JSON.parse(readFileSync(args.keys, 'utf8'));

const provider = new Provider(issuer, {
  clients: Object.keys(USERS).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks,
  scopes: ['mcp'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator, client) => {
        if (indicator !== args.resource) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'mcp',
          audience: args.resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: USERS[client.clientId].alg } },
        };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => {
    const user = USERS[token.clientId];
    return user?.groups === undefined ? undefined : { groups: user.groups };
  },
});

// A `server_error` response hides its cause; print it.
provider.on('server_error', (_ctx, error) => {
  console.error('server_error:', error);
});
provider.use(async (ctx, next) => {
  await next();
  console.log(`${ctx.method} ${ctx.path} ${ctx.status}`);
});

provider.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`oidc provider listening on ${issuer}`);
});
