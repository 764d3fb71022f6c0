"""Networks: escnn field types from equimanip.symmetry (fields), equivariant MLPs (mlp), the
SO(2) nonlinearities (nonlinear), and the convolutional actor and critic of Equivariant SAC.
No rclpy and no learning code here (DESIGN.md: imports go downward only)."""
