"""Chat orchestrator: LiteLLM models, the four agents, execution plans, streaming."""

import os

# LiteLLM fetches its model-cost map from the network at import unless told not to;
# this must run before anything imports litellm, so the app starts offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
