"""Learners and what they share: SAC (``sac``), the replay buffer with equi_rl's augmentation
(``replay``), evaluation in the simulation (``evaluate``) and the committed results files
(``results``). No rclpy here (DESIGN.md: imports go downward only)."""
