"""PointPillars on mmdet3d for 3-D LiDAR detection (issue 19): the detector adapter, its training and scoring."""
