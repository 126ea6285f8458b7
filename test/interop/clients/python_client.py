"""Python google-auth, unmodified, against the metadata emulator: compute_engine.Credentials().refresh()
(an access token), an ID token (id_token.fetch_id_token where the library has it; its metadata reader
in 1.x, which has no fetch_id_token), id_token.verify_token against the emulator's X.509
certificates, and the token sent to receiving with requests. Arguments: audience, certificates
URL, receiving URL. Prints one JSON object."""
import json
import sys

import requests
import google.auth.transport.requests as transport
from google.auth.compute_engine import Credentials, _metadata
from google.oauth2 import id_token

audience, certs_url, receiving = sys.argv[1:4]
request = transport.Request()
credentials = Credentials()
credentials.refresh(request)
if hasattr(id_token, "fetch_id_token"):
    token, how = id_token.fetch_id_token(request, audience), "fetch_id_token"
else:
    path = "instance/service-accounts/default/identity?audience={}&format=full".format(audience)
    token, how = _metadata.get(request, path), "_metadata.get"
claims = id_token.verify_token(token, request, audience=audience, certs_url=certs_url)
answer = requests.get(receiving, headers={"Authorization": "Bearer " + token}, timeout=10)
print(json.dumps({
    "access_token": credentials.token.startswith("ya29."),
    "account": credentials.service_account_email,
    "how": how,
    "verified_email": claims["email"],
    "status": answer.status_code,
    "body": answer.text,
}))
