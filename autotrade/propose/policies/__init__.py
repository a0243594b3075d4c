"""Who proposes the next candidate: one module per policy behind ``base.Policy``, and the registry that names them.

Adding a policy is a module here (an object satisfying ``Policy``) and one line in ``POLICIES``: the CLI's
``--policy`` choices and help, the run settings' check, the endpoint checks and the loop read it from here. This
package imports neither openai nor the prompts: ``--help`` reads the registry, ``POLICIES.get`` loads the module.
"""

from __future__ import annotations

from autotrade.propose.policies.base import Policy, Proposal, ProposalRequest, Proposer
from autotrade.registry import Entry, Registry

POLICIES: Registry[Policy] = Registry(
    "policy",
    {
        "model": Entry("the LLM at the endpoint", f"{__name__}.model:POLICY"),
        "random": Entry(
            "random causal-indicator strategies, no endpoint needed: the undirected baseline a model should beat",
            f"{__name__}.random_search:POLICY",
        ),
    },
)
DEFAULT_POLICY = "model"

__all__ = ["DEFAULT_POLICY", "POLICIES", "Policy", "Proposal", "ProposalRequest", "Proposer"]
