# SLidR's voxels for its MinkUNet (pretrain/dataloader_nuscenes.py): cylindrical cells of
# rho 0.1 m, phi 1 degree and z 0.1 m, floored, one voxel per cell, and the intensity of the
# cell's first point as its only input feature (in_channels=1). Shared by the reference
# pretraining student and the segmentors that finetune it (the same voxels in both).
slidr_voxelization = dict(voxel_type='minkunet_cylindrical', feature_columns=[3],
                          voxel_layer=dict(voxel_size=[0.1, 1.0, 0.1]))
slidr_backbone = dict(in_channels=1)
