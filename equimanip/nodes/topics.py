"""Topic names shared by the arm side (simulation or real cell) and the controllers."""

# Commands, in the conventions of MoveIt Servo and ros2_control.
TWIST = "/servo_node/delta_twist_cmds"
GRIPPER = "/gripper_command"
JOINT_TRAJECTORY = "/joint_trajectory_controller/joint_trajectory"

# The whole action, stamped with the instant of the state it was computed from (for recorders):
# sensor_msgs/JointState used as a stamped named vector, names = equimanip.action.ACTION_NAMES.
ACTION = "/equimanip/action"

# The task's goal on a real cell (geometry_msgs/PoseStamped in the base frame, latched), for
# recordings whose observation settings show it; controllers take it on ~/goal (remap it here).
GOAL = "/equimanip/goal"

# Safety and health, shared by every controller.
ESTOP = "/estop"                 # std_msgs/Bool: true stops every controller until re-enabled
DIAGNOSTICS = "/diagnostics"     # diagnostic_msgs/DiagnosticArray, once per second

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
SIM_EPISODE_EVENTS = "/sim_node/episode_events"   # diagnostic_msgs/DiagnosticArray, stamped
SIM_METADATA = "/sim_node/metadata"               # std_msgs/String (JSON), latched
