"""The error raised for a sample that a config may allow the dataset to skip."""


class BadSampleError(ValueError):
    """A sample whose data is unusable for pretraining (NaN/inf point values or
    calibration, too few pairs).

    With ``skip_bad_samples=True`` the dataset logs and counts it and draws another sample;
    otherwise it propagates. The message always names the file.
    """
