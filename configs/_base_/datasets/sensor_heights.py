# How high above the road the origin of each dataset's stored points lies (m), and the frame
# that every pipeline brings the points to. z is an input of the students (x, y, z, intensity),
# so the same road must lie at the same z in every dataset (ScaLR shifts PandaSet's z for the
# same reason). A dataset's pipelines add `<dataset>_origin_height - reference_origin_height`
# to z (ShiftHeight): right after the point-pixel pairing in pretraining (the pairs are those of
# the stored points), right after loading in segmentation.
# - nuScenes: points in the LIDAR_TOP frame, 1.84 m above nuScenes' ego origin on the ground
#   (lidar2ego z = 1.840 in the sample's info; the sample's points 3-6 m around the car, mostly
#   ground, have a median z of -1.82 m).
# - PandaSet: points in the ego frame of lidar/poses.json (tools/create_pandaset_infos.py),
#   whose origin lies near the road: the road points (class 7) within 20 m of each of the 10
#   frames of the PandaSet sample have median heights from -0.05 to -0.29 m, mean -0.22 m.
# The reference is nuScenes' frame (road at z = -1.84): nuScenes configs, checkpoints and
# recorded values stay as they were, and Cylinder3D's range (z from -4 to 2 m) is set for it.
nuscenes_origin_height = 1.84
pandaset_origin_height = 0.22
reference_origin_height = nuscenes_origin_height
