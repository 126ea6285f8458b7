/** Sample values for deploy/'s placeholders, as `npm run deploy:render` or Cloud Build fill them. */
export const SAMPLE_VALUES: Readonly<Record<string, string>> = {
  PROJECT_ID: 'my-project',
  PROJECT_NUMBER: '123456789012',
  REGION: 'us-central1',
  RECEIVING_IMAGE: 'us-central1-docker.pkg.dev/my-project/cloudrun-auth/receiving:1',
  CALLING_IMAGE: 'us-central1-docker.pkg.dev/my-project/cloudrun-auth/calling:1',
};
