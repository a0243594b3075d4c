"""Training the policy model on the harness: the evaluator as a reward, prompts as a dataset, runs as data.

``reward_function`` is TRL's reward signature over the loop's own scoring path (``rl.reward``); ``build_tasks``
renders the prompts a run would send (``rl.tasks``); ``load_environment`` wraps both as a verifiers environment
(``rl.environment``; needs ``pip install 'autotrade[rl]'``).
"""

from autotrade.rl.environment import load_environment
from autotrade.rl.reward import reward_function
from autotrade.rl.tasks import build_tasks

__all__ = ["build_tasks", "load_environment", "reward_function"]
