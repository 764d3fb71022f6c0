"""QoS profiles, one place for the whole package (REFERENCES section 6)."""
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Point clouds and other high-rate sensor streams: best effort, keep last 5. A late cloud is worse
# than a dropped one.
SENSOR = qos_profile_sensor_data

# The same streams from a driver that publishes reliably: DDS then resends lost fragments of a large
# cloud (over a loaded loopback most 4.9 MB clouds lose one with best effort). Shallow, as above.
RELIABLE_SENSOR = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# Commands and robot state: reliable, shallow queue (only the newest command matters).
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# Values that change rarely (the camera pose): the last one is kept for late subscribers.
LATCHED = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
