"""Planning in imagination: reach a goal by searching the latent world model.

- :mod:`~btnk_env.planning.solvers`: CEM, MPPI and random shooting over action sequences
- :mod:`~btnk_env.planning.cost`: imagined rollouts scored by the learned goal-distance head
- :mod:`~btnk_env.planning.goals`: goals as an image, a latent or a pose of the built-in world
- :mod:`~btnk_env.planning.policy`: :class:`~btnk_env.planning.policy.LatentPlanner` (receding horizon) and
  the policy that acts from observations alone
- :mod:`~btnk_env.planning.load`: the encoder, dynamics model and head, checked to belong together
- :mod:`~btnk_env.planning.evaluate`, :mod:`~btnk_env.planning.cli`: ``btnk-env plan`` and its evaluation
"""
