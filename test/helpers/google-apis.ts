import { randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { jwtVerify } from 'jose';
import { numericIdFor } from '../../local/metadata-emulator/identity.js';
import type { SigningKey } from '../../local/metadata-emulator/signing-key.js';

/** Where a process finds the stand-ins: HTTPS_PROXY to reach them, NODE_EXTRA_CA_CERTS to trust them. */
export interface GoogleApis {
  env: { HTTPS_PROXY: string; NODE_EXTRA_CA_CERTS: string };
  /** Every request the stand-ins answered, in order; `host` is where the client asked to connect. */
  requests: {
    host: string;
    method: string;
    path: string;
    authorization: string | undefined;
    body: Record<string, unknown>;
  }[];
  /** The ID tokens they issued: for whom, for which audience. */
  issued: { email: string; audience: string }[];
  close(): Promise<void>;
}

export interface GoogleApisOptions {
  /** Signs the ID tokens Google would issue (the chain's key, so its fronts accept them). */
  key: SigningKey;
  /** OAuth refresh tokens of users (authorized_user source credentials) → their email. */
  users?: Record<string, string>;
  /** Service-account keys: email → the public half of the key in its key file. */
  keys?: Record<string, KeyObject>;
  /** Service account → the members (`user:E`, `serviceAccount:E`) holding roles/iam.serviceAccountTokenCreator on it. */
  tokenCreators?: Record<string, string[]>;
}

const TLS = (ext: string) =>
  fileURLToPath(new URL(`../fixtures/tls/google-apis.${ext}`, import.meta.url));
const DENIED = (permission: string) => ({
  error: {
    code: 403,
    message: `Permission '${permission}' denied on resource (or it may not exist).`,
    status: 'PERMISSION_DENIED',
    details: [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'IAM_PERMISSION_DENIED',
        domain: 'iam.googleapis.com',
        metadata: { permission },
      },
    ],
  },
});
const UNAUTHENTICATED = {
  error: {
    code: 401,
    message:
      'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
    status: 'UNAUTHENTICATED',
  },
};

/**
 * Loopback stand-ins for Google's OAuth token endpoint (https://oauth2.googleapis.com/token: the
 * refresh-token and service-account JWT grants) and IAM Credentials' generateIdToken
 * (https://iamcredentials.googleapis.com), behind an HTTPS proxy, with a certificate for those names
 * (test/fixtures/tls). google-auth-library's own code reaches them unchanged through HTTPS_PROXY and
 * NODE_EXTRA_CA_CERTS: nothing leaves 127.0.0.1.
 */
export async function startGoogleApis(options: GoogleApisOptions): Promise<GoogleApis> {
  const accessTokens = new Map<string, string>();
  const requests: GoogleApis['requests'] = [];
  const issued: GoogleApis['issued'] = [];
  const idToken = (email: string, audience: string, includeEmail = true) => {
    issued.push({ email, audience });
    const iat = Math.floor(Date.now() / 1000);
    const sub = numericIdFor(email);
    return options.key.sign({
      aud: audience,
      azp: sub,
      ...(includeEmail ? { email, email_verified: true } : {}),
      exp: iat + 3600,
      iat,
      iss: 'https://accounts.google.com',
      sub,
    });
  };
  const mayCreateTokens = (member: string, account: string) =>
    (options.tokenCreators?.[account] ?? []).includes(member);

  const answer = async (
    host: string,
    method: string,
    path: string,
    authorization: string | undefined,
    body: Record<string, unknown>,
  ): Promise<[number, object]> => {
    if (host === 'oauth2.googleapis.com' && method === 'POST' && path === '/token') {
      if (body.grant_type === 'refresh_token') {
        const user = options.users?.[String(body.refresh_token)];
        if (user === undefined)
          return [400, { error: 'invalid_grant', error_description: 'Bad Request' }];
        const token = `ya29.standin-${randomBytes(12).toString('hex')}`;
        accessTokens.set(token, `user:${user}`);
        return [
          200,
          {
            access_token: token,
            expires_in: 3599,
            scope: 'https://www.googleapis.com/auth/cloud-platform',
            token_type: 'Bearer',
          },
        ];
      }
      if (body.grant_type === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
        try {
          const { iss } = JSON.parse(
            Buffer.from(String(body.assertion).split('.')[1] ?? '', 'base64url').toString(),
          ) as { iss?: string };
          const publicKey = options.keys?.[iss ?? ''];
          if (iss !== undefined && publicKey !== undefined) {
            const { payload } = await jwtVerify(String(body.assertion), publicKey, {
              algorithms: ['RS256'],
            });
            if (typeof payload.target_audience === 'string')
              return [200, { id_token: await idToken(iss, payload.target_audience) }];
          }
        } catch {
          // Falls through to Google's answer for an assertion it does not take.
        }
        return [400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' }];
      }
      return [400, { error: 'unsupported_grant_type', error_description: 'Invalid grant_type' }];
    }
    const target = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateIdToken$/.exec(path)?.[1];
    if (host === 'iamcredentials.googleapis.com' && method === 'POST' && target !== undefined) {
      const caller = accessTokens.get(/^Bearer (\S+)$/.exec(authorization ?? '')?.[1] ?? '');
      if (caller === undefined) return [401, UNAUTHENTICATED];
      if (typeof body.audience !== 'string' || body.audience === '') {
        return [
          400,
          { error: { code: 400, message: 'Audience is required.', status: 'INVALID_ARGUMENT' } },
        ];
      }
      // Each hop of the chain needs the role on the next: caller → delegates... → target.
      const delegates = Array.isArray(body.delegates)
        ? body.delegates.map((d) => String(d).replace(/^projects\/-\/serviceAccounts\//, ''))
        : [];
      const chain = [caller, ...delegates.map((d) => `serviceAccount:${d}`)];
      const accounts = [...delegates, target];
      if (!chain.every((member, i) => mayCreateTokens(member, accounts[i]!)))
        return [403, DENIED('iam.serviceAccounts.getOpenIdToken')];
      return [200, { token: await idToken(target, body.audience, body.includeEmail === true) }];
    }
    return [
      404,
      {
        error: { code: 404, message: `${method} ${path} is not served here`, status: 'NOT_FOUND' },
      },
    ];
  };

  const https = createHttpsServer(
    { key: readFileSync(TLS('key')), cert: readFileSync(TLS('crt')) },
    (req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        const type = req.headers['content-type'] ?? '';
        const body = (
          type.includes('json')
            ? JSON.parse(raw || '{}')
            : Object.fromEntries(new URLSearchParams(raw))
        ) as Record<string, unknown>;
        const host = (req.headers.host ?? '').replace(/:443$/, '');
        const path = (req.url ?? '').split('?')[0]!;
        requests.push({
          host,
          method: req.method ?? '',
          path,
          authorization: req.headers.authorization,
          body,
        });
        void answer(host, req.method ?? '', path, req.headers.authorization, body).then(
          ([status, reply]) => {
            res
              .writeHead(status, { 'content-type': 'application/json; charset=UTF-8' })
              .end(JSON.stringify(reply));
          },
        );
      });
    },
  );
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const httpsPort = (https.address() as AddressInfo).port;
  // An HTTPS proxy: CONNECT to Google's names reaches the stand-ins, and nothing else is reached.
  const tunnels = new Set<Socket>();
  const proxy = createNetServer((client) => {
    tunnels.add(client.once('close', () => tunnels.delete(client)));
    client.on('error', () => client.destroy());
    client.once('data', (head: Buffer) => {
      const target = /^CONNECT (\S+) /.exec(head.toString())?.[1] ?? '';
      if (
        target !== 'oauth2.googleapis.com:443' &&
        target !== 'iamcredentials.googleapis.com:443'
      ) {
        client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
        return;
      }
      const upstream = connect(httpsPort, '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        client.pipe(upstream).pipe(client);
      });
      upstream.on('error', () => client.destroy());
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    env: {
      HTTPS_PROXY: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      NODE_EXTRA_CA_CERTS: TLS('crt'),
    },
    requests,
    issued,
    close: async () => {
      https.closeAllConnections();
      for (const tunnel of tunnels) tunnel.destroy();
      await Promise.all([
        new Promise((resolve) => https.close(resolve)),
        new Promise((resolve) => proxy.close(resolve)),
      ]);
    },
  };
}

/** Impersonated ADC as `gcloud auth application-default login --impersonate-service-account=DELEGATES...,TARGET` writes it. */
export function impersonatedAdc(
  target: string,
  delegates: string[] = [],
  refreshToken = 'dev-refresh-token',
) {
  return {
    delegates,
    service_account_impersonation_url: `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${target}:generateAccessToken`,
    source_credentials: {
      account: 'dev@example.com',
      client_id: 'gcloud-client-id.apps.googleusercontent.com',
      client_secret: 'gcloud-client-secret',
      refresh_token: refreshToken,
      type: 'authorized_user',
      universe_domain: 'googleapis.com',
    },
    type: 'impersonated_service_account',
  };
}
