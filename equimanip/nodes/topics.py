"""Topic names shared by the arm side (simulation or real cell) and the controllers."""

# Commands, in the conventions of MoveIt Servo and ros2_control.
TWIST = "/servo_node/delta_twist_cmds"
GRIPPER = "/gripper_command"
JOINT_TRAJECTORY = "/joint_trajectory_controller/joint_trajectory"

# Robot state and camera.
EE_POSE = "/ee_pose"
JOINT_STATES = "/joint_states"
CLOUD = "/camera/points"
CAMERA_INFO = "/camera/camera_info"
CAMERA_POSE = "/camera/pose"

# Published by the simulation node (its private ~/ names, as seen from outside).
SIM_OBJECT_POSES = "/sim_node/object_poses"
SIM_EPISODE_DONE = "/sim_node/episode_done"
SIM_RESET = "/sim_node/reset"
