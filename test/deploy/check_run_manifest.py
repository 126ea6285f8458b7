"""Checks a resolved Cloud Run manifest or IAM policy the way gcloud itself parses them, offline.

Run with gcloud's bundled python and PYTHONPATH=<sdk>/lib:<sdk>/lib/third_party:
  check_run_manifest.py service FILE   as `gcloud run services replace FILE` converts it
  check_run_manifest.py policy FILE    as `gcloud run services set-iam-policy SERVICE FILE` does,
                                       and strictly (protorpc ignores unknown policy fields)
Prints OK and a summary, or gcloud's own error and exits 1.
"""
import sys

from googlecloudsdk.api_lib.util import apis
from googlecloudsdk.api_lib.util import messages as messages_util
from googlecloudsdk.core import yaml

kind, path = sys.argv[1], sys.argv[2]
run = apis.GetMessagesModule('run', 'v1')
try:
  doc = yaml.load_path(path)
  if kind == 'service':
    service = messages_util.DictToMessageWithErrorCheck(doc, run.Service)
    spec = service.spec.template.spec
    print('OK', service.metadata.name, spec.serviceAccountName, spec.containers[0].image)
  else:
    policy = messages_util.DictToMessageWithErrorCheck(doc, run.Policy)
    print('OK', [(b.role, list(b.members)) for b in policy.bindings])
except Exception as e:  # pylint: disable=broad-except
  print('ERROR %s: %s' % (type(e).__name__, e))
  sys.exit(1)
