"""The pack's socket types. Distinct names keep ComfyUI from wiring our models into core nodes
(or core MODEL/CLIP outputs into ours), which would only fail later with a confusing error."""

from comfy_api.latest import io

DiffusionModelSocket = io.Custom("BLENDED_DIFFUSION_MODEL")  # blended.pixel.diffusion_model.DiffusionModel
ClipSocket = io.Custom("BLENDED_CLIP")  # blended.clip_model.ClipBundle
LpipsSocket = io.Custom("BLENDED_LPIPS")  # LPIPS module: (a, b) in [-1,1] -> [B]
AugmentationSocket = io.Custom("BLENDED_AUGMENTATION")  # blended.augment.ExtendingAugmentation
GuidanceSocket = io.Custom("BLENDED_GUIDANCE")  # blended.guidance.Guidance
LatentCropSocket = io.Custom("BLENDED_LATENT_CROP")  # blended.latent.crop_stitch.LatentCrop
RewardSocket = io.Custom("BLENDED_REWARD")  # blended.reward_models.RewardModel, or nodes.reward_nodes.Unavailable
CriteriaSocket = io.Custom("BLENDED_RANK_CRITERIA")  # tuple of blended.ranking.RewardCriterion
