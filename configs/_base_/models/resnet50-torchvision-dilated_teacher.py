# SLidR's teacher and 2D head (model/image_model.py): torchvision's ResNet-50 with
# replace_stride_with_dilation=[True, True, True] (the first block of each dilated stage keeps
# the previous dilation) and a head that upsamples by 4 with align_corners=True.
_base_ = ['./resnet50_dilated_teacher.py']
teacher_model = dict(teacher=dict(dilation_style='torchvision'),
                     image_head=dict(scale_factor=4, align_corners=True))
