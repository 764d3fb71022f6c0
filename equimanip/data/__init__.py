"""Recorded demonstrations: rosbag2 bags written and read without rclpy (``bag``), the message
definitions they carry (``msgdefs``), and the dataset of (observation, action, next observation)
samples built from a directory of episodes (``dataset``)."""
