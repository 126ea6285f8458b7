import com.google.api.client.googleapis.auth.oauth2.GoogleIdToken;
import com.google.api.client.googleapis.auth.oauth2.GoogleIdTokenVerifier;
import com.google.api.client.googleapis.auth.oauth2.GooglePublicKeysManager;
import com.google.api.client.http.javanet.NetHttpTransport;
import com.google.api.client.json.gson.GsonFactory;
import com.google.auth.oauth2.ComputeEngineCredentials;
import com.google.auth.oauth2.IdTokenProvider;
import java.net.HttpURLConnection;
import java.net.URL;
import java.util.List;

/**
 * Google's Java clients from Debian's packages, against the metadata emulator (GCE_METADATA_HOST):
 * google-auth-library's ComputeEngineCredentials mints an ID token, google-api-client's
 * GoogleIdTokenVerifier checks it against the emulator's X.509 certificates, and the token is sent
 * to receiving. Prints one JSON object. Arguments: audience, certificates URL, JWKS URL,
 * receiving URL.
 */
public class JavaClient {
  public static void main(String[] args) throws Exception {
    String audience = args[0], certsUrl = args[1], jwksUrl = args[2], receiving = args[3];
    String token = ComputeEngineCredentials.create()
        .idTokenWithAudience(audience, List.of(IdTokenProvider.Option.FORMAT_FULL))
        .getTokenValue();
    GooglePublicKeysManager keys = new GooglePublicKeysManager.Builder(new NetHttpTransport(), GsonFactory.getDefaultInstance())
        .setPublicCertsEncodedUrl(certsUrl)
        .build();
    // google-oauth-client (1.34) checks the signature against a JWKS first; google-api-client's
    // verifier then checks it against the X.509 certificates, and parses nothing else.
    GoogleIdTokenVerifier.Builder builder = new GoogleIdTokenVerifier.Builder(keys);
    builder.setAudience(List.of(audience));
    builder.setCertificatesLocation(jwksUrl);
    GoogleIdToken verified = builder.build().verify(token);
    HttpURLConnection connection = (HttpURLConnection) new URL(receiving).openConnection();
    connection.setRequestProperty("Authorization", "Bearer " + token);
    int status = connection.getResponseCode();
    String email = verified == null ? null : (String) verified.getPayload().get("email");
    System.out.println("{\"verified\": " + (verified != null) + ", \"email\": \"" + email + "\", \"status\": " + status + "}");
  }
}
