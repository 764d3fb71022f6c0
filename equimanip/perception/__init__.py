"""Point-cloud perception: from a sensor_msgs/PointCloud2 to what the policies see.

* ``pointcloud2``   PointCloud2 <-> numpy for every driver layout; PointCloud2Error for bad clouds
* ``frames``        camera frame -> base frame (tf2 when installed, else the camera_pose parameter)
* ``heightmap``     gripper-centred top-down max-height image, exactly equivariant under 90 deg turns
* ``object_state``  table plane, clusters, per-object box summaries, the fixed-size state vector
* ``observation``   ObservationConfig, Observation and build_observation (nodes and training share it)
* ``synthetic``     a ray-cast table-top cloud for benchmarks and tests that must not need PyBullet

Only ``pointcloud2``'s encoders import ROS message classes, and only when called.
"""
