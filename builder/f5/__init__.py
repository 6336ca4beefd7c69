"""An F5 BIG-IP in place of HAProxy (`load_balancer.kind: f5`).

`plan` turns the cluster into the BIG-IP objects (monitors, nodes, pools, a TCP profile,
virtual servers), once; `as3` renders them as an AS3 declaration; `apply` POSTs it to a
BIG-IP's AS3 endpoint. The tmsh commands and the README are templates rendered by the `f5`
stage (builder/stages/f5.py), from the same plan. Nothing here imports builder.stages.
"""
