r"""Contrastive training on webdataset tar shards (img2dataset's output layout).

  python -m cmjax.data.export_example --out /tmp/own      # writes shards too
  python train.py --config configs/webdataset_contrastive.py \
      --config.data.shards='/tmp/own/shapes/shards/train-{00000..00003}.tar' \
      --config.data.eval_shards=/tmp/own/shapes/shards/test-00000.tar \
      --workdir /tmp/cmjax-wds

`files_contrastive.py` with `source=webdataset`: the same model, training and
evaluation; which tar members make each modality is `config.data.fields`
(`cmjax/data/webdataset.py`). Its variants (`tiny`, `steps=N`, `image=E`, ...)
work here too.
"""

import os

from cmjax import config_utils


def get_config(arg=None):
  arg = f"source=webdataset,{arg}" if arg else "source=webdataset"
  return config_utils.load_config(
    os.path.join(os.path.dirname(__file__), "files_contrastive.py"), arg
  )
