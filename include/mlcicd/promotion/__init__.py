"""From a gated candidate to the champion: the served = champion transaction (:mod:`.transaction`)
and the rollout analysis (:mod:`.analysis`); plain functions over a deploy target and the registry,
called by the ``ml_retrain`` task adapters and by ``mlcicd status``."""
