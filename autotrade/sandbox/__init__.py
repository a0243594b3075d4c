"""Isolation of model-written code: static vetting, the sandboxed child runtime and the layers around it.

- vet.vet_block: static AST vetting, the first layer.
- pool.SandboxPool: runs a block on a frame and its prefixes in sandboxed child processes; its
  probe_layers says which isolation layers hold on this machine (for `autotrade doctor`).
- server.py (the fork server), child.py (a worker child), protocol.py (what they say to the harness),
  layers.py (each isolation layer), execute.py (the candidate's pure runtime).
"""
