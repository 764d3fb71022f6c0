"""Networks: escnn field types from equimanip.symmetry (fields), equivariant MLPs (mlp), the
SO(2) nonlinearities and poolings with plain-torch exports (nonlinear), relaxed group convolutions
(relaxed), and Equivariant SAC's actor and critic (config, sac_networks).
No rclpy and no learning code here (DESIGN.md: imports go downward only)."""
from equimanip.models.config import NetworkConfig
from equimanip.models.sac_networks import Actor, Critic, make_actor, make_critic

__all__ = ["NetworkConfig", "Actor", "Critic", "make_actor", "make_critic"]
