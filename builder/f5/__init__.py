"""An F5 BIG-IP in place of HAProxy (`load_balancer.kind: f5`).

This package talks to a BIG-IP: `apply` POSTs the AS3 declaration to its AS3 endpoint and
`status` reads the pools back. What it sends is built below it, in the stages layer:
builder/stages/f5plan.py turns the cluster into the BIG-IP objects (monitors, nodes, pools, a
TCP profile, virtual servers), once; f5as3.py renders them as an AS3 declaration; the `f5`
stage (builder/stages/f5.py) writes that declaration, the tmsh commands and the README.
"""
