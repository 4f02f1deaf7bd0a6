"""A built-in synthetic short-video dataset in the WBDC layout, small enough for CPU demos and tests.

Every level-2 class is a unique pair (text concept, video concept). By default 8 text concepts each go with 3 of
7 motions (every motion with 3 or 4 text concepts); the 7th motion, a horizontal slide, gives a text concept one class
per direction (``left_to_right`` and ``right_to_left``): 27 classes in 8 level-1 groups. A class's level-1 group is
``(text + motion) mod num_text_concepts``, so neither modality alone determines the level-2 class *or* the level-1
group: text alone narrows a sample to 3 or 4 classes, video alone to 3 or 4, and only their fusion can score high.
As in real videos, the two modalities are correlated (a text concept is seen with only some video concepts), so a
video and a text drawn from different samples are often an impossible pair: the signal that video-text matching
and contrastive pretraining learn from on unlabelled videos. ``video_concepts_per_text = num_video_concepts``
makes every pair a class (independent modalities, nothing to match).

- Text concepts are keyword sets mixing Chinese and English ("美食", "cooking", ...). A keyword of the sample's
  concept shows up in the title, the asr and/or the ocr with some probability each (sometimes nowhere), among
  everyday filler words, and sometimes a keyword of another concept is slipped in as a distractor. Like a real
  topic, each concept also favours some filler words (``p_topic_word`` of them come from the concept's own Dirichlet
  distribution over the fillers): every word is a weak cue that a few labels cannot learn, but that masked language
  modelling on unlabelled text can (a masked word is predicted from the topic of the others).
- Video concepts are moving shapes. ``rise``/``fall`` (a square moving up/down), ``grow``/``shrink`` (a disk
  growing/shrinking) and ``left_to_right``/``right_to_left`` (a cross sliding across) are exact time reversals of
  each other, so only the frame *order* separates them. The two slides are also mirror images (in distribution: a
  horizontally flipped ``left_to_right`` video is a ``right_to_left`` one), so a horizontal flip must swap their
  labels: ``flip_label_map.json`` lists those class pairs (:func:`flip_label_map`). Nuisance per video: background
  colour, gradient and noise, object colour, size, position, speed and easing, jitter, an optional static
  distractor dot, and the number of frames.
- Class frequencies follow a Zipf law; every class gets at least one sample in a split of at least
  ``num_classes`` samples (the rarest default class has 12 labelled samples, the commonest ~300).
- Faulty samples are planted in every split by default (missing / empty / truncated / non-JPEG / member-less
  zips, truncated or empty mp4s, empty text fields, a very long asr) and listed in ``faults.json``.

Everything is deterministic by seed: annotations and zips are byte-identical across runs and worker counts
(each sample draws from its own random stream); mp4 files are encoded from the same frames.

Files written under the output root (see the README's "Data format"): ``annotations/{labeled,unlabeled,test}.json``,
``annotations/test_truth.csv``, ``category_ids.txt``, ``zip_frames/<split>/<id[-3:]>/<id>.zip``,
``videos/<split>/<id>.mp4``, ``faults.json``, ``oracle.json`` (per-sample concepts), ``flip_label_map.json``
(``{category_id: mirror category_id}``, both ways), ``reverse_label_map.json`` (``{category_id: the class it plays
backwards as, or null}``, :func:`reverse_label_map`), ``synthetic_spec.json`` and ``README.txt``.
"""

from mmcls.synthetic.plan import (
    FAULT_KINDS,
    FAULT_SOURCES,
    FLIP_MAP_FILE,
    MIRRORED_CONCEPT,
    REVERSE_MAP_FILE,
    REVERSED_CONCEPT,
    SPLITS,
    TEXT_CONCEPTS,
    VIDEO_CONCEPTS,
    VIDEO_MOTIONS,
    ClassInfo,
    SamplePlan,
    SyntheticSpec,
    active_fault_kinds,
    class_table,
    flip_label_map,
    plan_dataset,
    reverse_label_map,
)
from mmcls.synthetic.render import render_frames
from mmcls.synthetic.text import FILLERS, make_record, text_concept_scores
from mmcls.synthetic.write import (
    load_faults,
    load_flip_label_map,
    load_oracle,
    load_spec,
    make_synthetic,
    mp4_path,
    write_mp4,
    zip_path,
)

__all__ = [
    "FAULT_KINDS",
    "FAULT_SOURCES",
    "FILLERS",
    "FLIP_MAP_FILE",
    "MIRRORED_CONCEPT",
    "REVERSED_CONCEPT",
    "REVERSE_MAP_FILE",
    "SPLITS",
    "TEXT_CONCEPTS",
    "VIDEO_CONCEPTS",
    "VIDEO_MOTIONS",
    "ClassInfo",
    "SamplePlan",
    "SyntheticSpec",
    "active_fault_kinds",
    "class_table",
    "flip_label_map",
    "load_faults",
    "load_flip_label_map",
    "load_oracle",
    "load_spec",
    "make_record",
    "make_synthetic",
    "mp4_path",
    "plan_dataset",
    "render_frames",
    "reverse_label_map",
    "text_concept_scores",
    "write_mp4",
    "zip_path",
]
