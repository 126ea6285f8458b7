// Node's Google clients, unmodified, against the metadata emulator (GCE_METADATA_HOST): gcp-metadata
// reads values and waits for a change, google-auth-library mints an ID token, sends it to receiving
// with its own request method and verifies it against the emulator's X.509 certificates.
// Arguments: audience, certificates URL, receiving URL. Prints one JSON object.
import * as gcpMetadata from 'gcp-metadata';
import { GoogleAuth, OAuth2Client } from 'google-auth-library';

const [audience, certsUrl, receiving] = process.argv.slice(2);
const result = {};
result.available = await gcpMetadata.isAvailable();
result.projectId = await gcpMetadata.project('project-id');
result.email = await gcpMetadata.instance('service-accounts/default/email');
// A wait whose last_etag is stale answers at once; one with the current etag holds until timeout_sec.
result.waited = await gcpMetadata.instance({
  property: 'id',
  params: { wait_for_change: 'true', last_etag: '0', timeout_sec: '30' },
});
const client = await new GoogleAuth().getIdTokenClient(audience);
const token = (await client.getRequestHeaders()).get('authorization').slice('Bearer '.length);
const certs = await (await fetch(certsUrl)).json();
const ticket = await new OAuth2Client().verifySignedJwtWithCertsAsync(token, certs, audience, [
  'https://accounts.google.com',
]);
result.verifiedEmail = ticket.getPayload().email;
const answer = await client.request({
  url: receiving,
  validateStatus: () => true,
  responseType: 'text',
});
result.status = answer.status;
result.body = answer.data;
process.stdout.write(JSON.stringify(result) + '\n');
