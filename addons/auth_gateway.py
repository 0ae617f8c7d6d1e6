"""The file to pass to mitmdump.

mitmdump -s addons/auth_gateway.py --set authgw_config=gateway.yaml
"""

from authgw.addon import AuthGateway

addons = [AuthGateway()]
