# The sizes of the real-data check (tools/real_data_check.py), in one place for its pretraining
# configs: the demo's small MinkUNet (width 16, one block per stage), the ImageNet MobileNetV2
# teacher (stride 16) from the checkpoint the check converts, 224x416 crops of PandaSet's front
# camera, the PandaSet sample converted with both lidars, the points within 30 m (about 110,000
# of 170,000 a frame) in 0.3 m voxels (about 16,000 a frame: what 2 CPU cores train in
# minutes), batch 2.
real_data_root = 'work_dirs/real_data/pandaset/'
real_teacher_checkpoint = 'work_dirs/real_data/checkpoints/mobilenetv2-imagenet.pth'
real_student_backbone = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                             encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                             decoder_blocks=[1, 1, 1, 1])
real_epochs = 10
real_voxel_size = [0.3, 0.3, 0.3]
real_max_range = 30.0
