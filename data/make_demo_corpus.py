"""Generates the bundled demo corpus: POS-tagged sentences from a small random grammar.

    python data/make_demo_corpus.py            # rewrites data/demo/*

Deterministic (fixed seed). Some words are ambiguous ("run", "watch", "light" are nouns
or verbs; "that" is a determiner or a complementizer), so a tagger has to use context.
Writes `tagged.conll` (token<TAB>tag, blank line between sentences) and `sentences.txt`
(the same sentences as plain text, one per line) for the language-model task.
"""

import os
import random

DETERMINERS = ["the", "a", "every", "some", "that", "this", "no"]
ADJECTIVES = ["small", "quick", "old", "green", "quiet", "bright", "heavy", "strange", "happy", "light"]
NOUNS = ["dog", "cat", "engineer", "model", "river", "city", "watch", "run", "light", "pipeline",
         "record", "garden", "teacher", "network", "book", "storm", "child", "tree"]
PROPER = ["Alice", "Bob", "Paris", "Oslo", "Keras", "Beam", "Ada", "Turing"]
VERBS_T = ["sees", "builds", "likes", "trains", "reads", "watch", "run", "light", "follows", "finds"]
VERBS_I = ["sleeps", "runs", "waits", "falls", "grows", "shines", "laughs"]
ADVERBS = ["quickly", "quietly", "often", "never", "slowly", "today"]
PREPOSITIONS = ["near", "under", "with", "behind", "over", "in"]
CONJ = ["and", "but", "while"]
VERBS_SAY = ["says", "thinks", "knows"]


def noun_phrase(rng, plural_ok=True):
  if rng.random() < 0.2:
    return [(rng.choice(PROPER), "PROPN")]
  words = [(rng.choice(DETERMINERS), "DET")]
  for _ in range(rng.choice([0, 0, 1, 1, 2])):
    words.append((rng.choice(ADJECTIVES), "ADJ"))
  words.append((rng.choice(NOUNS), "NOUN"))
  if rng.random() < 0.25:
    words += [(rng.choice(PREPOSITIONS), "ADP")] + noun_phrase(rng)[:3]
  return words


def clause(rng, depth=0):
  words = noun_phrase(rng)
  if rng.random() < 0.25:
    words.append((rng.choice(ADVERBS), "ADV"))
  if depth < 1 and rng.random() < 0.15:
    words += [(rng.choice(VERBS_SAY), "VERB"), ("that", "SCONJ")] + clause(rng, depth + 1)
  elif rng.random() < 0.6:
    words += [(rng.choice(VERBS_T), "VERB")] + noun_phrase(rng)
  else:
    words.append((rng.choice(VERBS_I), "VERB"))
  return words


def sentence(rng):
  words = clause(rng)
  if rng.random() < 0.3:
    words += [(",", "PUNCT"), (rng.choice(CONJ), "CCONJ")] + clause(rng)
  words[0] = (words[0][0][0].upper() + words[0][0][1:], words[0][1])
  words.append((rng.choice([".", ".", ".", "!", "?"]), "PUNCT"))
  return words


def main(num_sentences=4000, seed=7):
  rng = random.Random(seed)
  out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
  os.makedirs(out_dir, exist_ok=True)
  sentences = [sentence(rng) for _ in range(num_sentences)]
  with open(os.path.join(out_dir, "tagged.conll"), "w", encoding="utf-8") as f:
    f.write("-DOCSTART-\tO\n\n")
    for words in sentences:
      f.write("".join(f"{word}\t{tag}\n" for word, tag in words) + "\n")
  with open(os.path.join(out_dir, "sentences.txt"), "w", encoding="utf-8") as f:
    for words in sentences:
      text = " ".join(word for word, _ in words)
      f.write(text.replace(" ,", ",").replace(" .", ".").replace(" !", "!").replace(" ?", "?") + "\n")


if __name__ == "__main__":
  main()
