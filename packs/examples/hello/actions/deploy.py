"""Pretend to deploy: read the parameters as JSON on stdin, print the result as JSON."""
import json
import sys

params = json.load(sys.stdin)
json.dump({"service": params["service"], "replicas": params["replicas"], "status": "deployed"}, sys.stdout)
print()
