import { emailKey, iamMember } from '../../services/shared/iam.js';

describe('IAM members and emails', () => {
  it('binds service accounts as serviceAccount: and everyone else as user:', () => {
    expect(iamMember('a@p.iam.gserviceaccount.com')).toBe(
      'serviceAccount:a@p.iam.gserviceaccount.com',
    );
    expect(iamMember('123-compute@developer.GSERVICEACCOUNT.com')).toBe(
      'serviceAccount:123-compute@developer.GSERVICEACCOUNT.com',
    );
    expect(iamMember('a@example.com')).toBe('user:a@example.com');
    expect(iamMember('a@p.gserviceaccount.com.example')).toBe(
      'user:a@p.gserviceaccount.com.example',
    );
  });

  it('folds ASCII letters only, so look-alikes stay other addresses', () => {
    expect(emailKey('Kate.Doe@Example.COM')).toBe('kate.doe@example.com');
    expect(emailKey('AZaz09@[]')).toBe('azaz09@[]');
    // U+212A KELVIN SIGN and U+0130 (I with a dot): a Unicode-aware toLowerCase() folds both into ASCII.
    expect(emailKey('\u212aate@example.com')).toBe('\u212aate@example.com');
    expect(emailKey('\u0130van@example.com')).toBe('\u0130van@example.com');
  });
});
