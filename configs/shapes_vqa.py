r"""Visual question answering and relation classification on `shapes`.

  python train.py --config configs/shapes_vqa.py --workdir /tmp/cmjax-vqa
  python train.py --config configs/shapes_vqa.py:fusion=relation_network --workdir /tmp/cmjax-rn
  python train.py --config configs/shapes_vqa.py:question=spoken --workdir /tmp/cmjax-spoken

task=vqa: the answer (one of 23: yes/no, counts, shapes, colours, sizes) to a
question about the scene; questions are of five types (attribute, existence,
count, relation, compare; `shapes_text.question`) and the test accuracy is
reported per type (`classification/answer_label/by_question_type/<type>/accuracy`).
task=relation: the relation (left of / right of / above / below) of the first
named object to the second, from the image and a text naming them ("the red
circle and the blue square"); scenes of 2-3 objects.

Every model is the `fusion_classifier` with a fusion from the zoo, including
the relational ones (`relation_network`, `graph_network`, `film`), whose object
tokens are the image's patch tokens, conditioned on the question.

Variants (after the colon, comma separated):
  task=vqa|relation
  fusion=NAME         concat (default), cross_attention, joint_transformer,
                      relation_network, graph_network, film, ... (the fusion zoo)
  inputs=both|text|image   'text' / 'image' alone are the question-only and
                      image-only baselines
  question=typed|spoken    spoken: the question is heard (eSpeak NG speech
                      through the audio tower) instead of read
  seed=N, tiny, steps=N, batch_size=N, workers=N   as in shapes_classify.py
"""

import ml_collections

from cmjax import config_utils
from cmjax.data import shapes_text

TASKS = {
  "vqa": dict(text_field="question", head="answer_label", min_objects=1),
  "relation": dict(text_field="pair_caption", head="relation_label", min_objects=2),
}
# The relation network pays for n^2 = 4096 pairs of patch tokens: its g stays narrow.
RELATIONAL = ("relation_network", "graph_network", "film")
RELATIONAL_SIZES = dict(hidden=64, g_layers=3, f_layers=2, num_blocks=3, depth=2)


def get_config(arg=None):
  arg = config_utils.parse_arg(
    arg, **config_utils.CLASSIFIER_ARGS, task="vqa", inputs="both", question="typed"
  )
  if arg.task not in TASKS:
    raise ValueError(f"config argument task={arg.task!r}; expected one of {sorted(TASKS)}")
  if arg.inputs not in ("both", "text", "image"):
    raise ValueError(f"config argument inputs={arg.inputs!r}; expected both, text or image")
  if arg.question not in ("typed", "spoken"):
    raise ValueError(f"config argument question={arg.question!r}; expected typed or spoken")
  task = TASKS[arg.task]
  spoken = arg.question == "spoken"
  if spoken and arg.task != "vqa":
    raise ValueError("config argument question=spoken is for task=vqa (spoken questions)")
  language = "audio" if spoken else "text"
  modalities = {"both": ("image", language), "text": (language,), "image": ("image",)}[arg.inputs]

  c = ml_collections.ConfigDict()
  c.seed = arg.seed
  c.data = dict(
    name="shapes",
    num_train=20_000,
    image_size=64,
    min_objects=task["min_objects"],
    max_objects=3,
    domain=0,
    class_skew=0.0,
    speech=spoken,
    spoken="question" if spoken else "caption",
    sample_rate=16_000,
    max_speech_seconds=3.0,
    tokenizer="word",
    max_text_len=12,
    text_field=task["text_field"],
    extras=(task["head"], "question_type"),
    num_workers=0,
  )
  c.batch_size = 128
  c.total_steps = 3000
  c.total_epochs = None
  c.total_examples = None

  sizes = dict(config_utils.FUSION_SIZES, **RELATIONAL_SIZES)
  c.model = dict(
    name="fusion_classifier",
    modalities=modalities,
    image=dict(name="vit", patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128, stem="conv"),
    text=dict(name="transformer", width=64, depth=1, num_heads=4, mlp_dim=128),
    audio=dict(name="cnn", n_fft=400, hop_length=320, n_mels=48, widths=(32, 64, 64), width=64),
    fusion=config_utils.fusion_config(arg.fusion, sizes),
    heads={task["head"]: len(shapes_text.ANSWERS if arg.task == "vqa" else shapes_text.RELATIONS)},
    missing=arg.missing,
  )
  config_utils.set_classification_defaults(c, missing_fractions=(), noise_levels=())
  c.evals.classification.num_examples = 2000
  if arg.task == "vqa":
    c.evals.classification.group_by = "question_type"
    c.evals.classification.group_names = shapes_text.QUESTION_TYPES
  if arg.fusion in RELATIONAL and arg.inputs == "both":
    # Where it looked on 8 held-out examples: <workdir>/maps_examples.png.
    names = shapes_text.ANSWERS if arg.task == "vqa" else shapes_text.RELATIONS
    c.evals.maps = dict(
      type="relation_maps", every_steps=0, split="test", num_examples=8, class_names=names
    )

  if arg.tiny:
    config_utils.shrink_to_tiny(c)
    c.data.max_speech_seconds = 2.0
    c.model.image = dict(name="vit", patch_size=16, width=16, depth=1, num_heads=2, mlp_dim=32)
    c.model.text = dict(name="transformer", width=16, depth=1, num_heads=2, mlp_dim=32)
    c.model.audio = dict(name="cnn", n_fft=400, hop_length=320, n_mels=16, widths=(8, 16), width=16)
    tiny = dict(config_utils.TINY_FUSION_SIZES, hidden=16, g_layers=2, num_blocks=1)
    c.model.fusion = config_utils.fusion_config(arg.fusion, tiny)

  config_utils.apply_common_overrides(c, arg)
  return c
