"""The person in a photo: body pose (MediaPipe Pose) and the cut-out every pipeline starts from."""

from pipelines.person.pose import NAMES, BodyPose, estimate_pose

__all__ = ["NAMES", "BodyPose", "estimate_pose"]
