"""The addon a user writes instead of authgw's sigv4 route: botocore's SigV4Auth per request."""

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from mitmproxy import http

_credentials = botocore.session.get_session().get_credentials()
SERVICE, REGION = "execute-api", "eu-west-1"
DROP = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


def request(flow: http.HTTPFlow) -> None:
    req = flow.request
    for name in DROP:
        req.headers.pop(name, None)
    headers = {"host": req.host_header or req.host}
    aws = AWSRequest(method=req.method, url=req.url, data=req.content or b"", headers=headers)
    SigV4Auth(_credentials.get_frozen_credentials(), SERVICE, REGION).add_auth(aws)
    for name, value in aws.headers.items():
        if name.lower() != "host":
            req.headers[name] = value
