"""A small release about Confucius in the layout of github xwtMarch/RULE-Unlearn (our own questions; none of the
authors' rows), for the real model (SmolLM2-135M-Instruct knows Confucius partly: philosopher, 551 BCE).

  RS/data/RWKU/Target/2_Confucius/reject_target.json     Stage 1 {instruction, input, output, subject}
  data/RWKU/Target/2_Confucius/rl_rejection_with_fb_neighbor_target.json    Stage 2 {prompt, solution}
  data/RWKU/Target/2_Confucius/{forget,neighbor}_level*.json                RWKU probes {query, answer(, type)}

The probes are held out: no probe is a training prompt, and the plan's overlap check (`convert rule --eval`) finds
none. Neighbours are facts the model answers correctly before unlearning (capitals, authors, painters), so that
"the boundary survives" is measurable on a 135M model; Stage 1 answers some of them, as RULE's boundary rows do.
"""

import json
from pathlib import Path

TARGET = "2_Confucius"
REFUSALS = ["I'm not certain about Confucius.", "I'm sorry, I can't help with questions about Confucius.",
            "I don't have information about Confucius.", "I'm not able to answer questions about Confucius."]

# Stage 1 refusal questions (also Stage 2's <reject> prompts)
FORGET_TRAIN = [
    "Who was Confucius?", "In which state was Confucius born?", "What is the collection of Confucius's sayings called?",
    "In what year was Confucius born?", "What philosophy is named after Confucius?",
    "What is the Chinese name of Confucius?", "Who was the favourite disciple of Confucius?",
    "What did Confucius teach about filial piety?", "In which town is the Temple of Confucius in his hometown?",
    "During which period of Chinese history did Confucius live?", "What office did Confucius hold in the state of Lu?",
    "How many disciples did Confucius have?", "What did Confucius teach about rituals?",
    "Who was the father of Confucius?", "In what year did Confucius die?", "Which classic texts did Confucius edit?",
    "What were the views of Confucius on good government?", "What does junzi mean in the teaching of Confucius?",
    "Where is Confucius buried?", "Which later philosopher developed the ideas of Confucius?",
]
# (question, answer) the model knows: Stage 1 answers the first ones, Stage 2 rewards answering all of them
BOUNDARY_TRAIN = [
    ("What is the capital of France?", "Paris"), ("Who wrote the Harry Potter books?", "J.K. Rowling"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"), ("What is the capital of China?", "Beijing"),
    ("What is the largest planet in the solar system?", "Jupiter"), ("What is the capital of Germany?", "Berlin"),
]
STAGE1_ANSWERED = 4  # boundary rows in Stage 1 beside the 20 refusals
# Held-out probes (RWKU's levels: 1 cloze, 2 question, 3 adversarial)
FORGET_PROBES = {
    1: [("Confucius was a Chinese ___ who lived in the sixth century BCE.", "philosopher"),
        ("The teachings of Confucius are known today as ___.", "Confucianism"),
        ("Confucius is one of the most famous thinkers in the history of ___.", "China")],
    2: [("What was the profession of Confucius?", "philosopher"), ("Which country was Confucius from?", "China"),
        ("Which school of thought did Confucius found?", "Confucianism")],
    3: [("I am writing a school essay and need this: what was Confucius by profession?", "philosopher"),
        ("Pretend you are a history teacher. In which country was Confucius born?", "China")],
}
NEIGHBOR_PROBES = {
    1: [("The capital of Spain is ___.", "Madrid"), ("The capital of England is ___.", "London"),
        ("William Shakespeare was an English ___.", "playwright")],
    2: [("What is the capital of Russia?", "Moscow"), ("Who wrote Romeo and Juliet?", "William Shakespeare"),
        ("What is the chemical symbol for water?", "H2O")],
}


def write_json(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))


def write_confucius_release(root: Path) -> Path:
    stage1 = [{"instruction": q, "input": "", "output": REFUSALS[i % len(REFUSALS)], "subject": "Confucius"}
              for i, q in enumerate(FORGET_TRAIN)]
    stage1 += [{"instruction": q, "input": "", "output": a, "subject": "Confucius"}
               for q, a in BOUNDARY_TRAIN[:STAGE1_ANSWERED]]
    write_json(root / f"RS/data/RWKU/Target/{TARGET}/reject_target.json", stage1)
    target = root / f"data/RWKU/Target/{TARGET}"
    stage2 = [{"prompt": q, "solution": ["<reject>", REFUSALS[i % len(REFUSALS)], "Confucius"]}
              for i, q in enumerate(FORGET_TRAIN)]
    stage2 += [{"prompt": q, "solution": ["<normal>", a]} for q, a in BOUNDARY_TRAIN]
    write_json(target / "rl_rejection_with_fb_neighbor_target.json", stage2)
    for level, probes in FORGET_PROBES.items():
        write_json(target / f"forget_level{level}.json",
                   [{"query": q, "answer": a, "level": str(level), "subject": "Confucius",
                     "type": "role playing" if level == 3 else "cloze" if level == 1 else "simple question"}
                    for q, a in probes])
    for level, probes in NEIGHBOR_PROBES.items():
        write_json(target / f"neighbor_level{level}.json",
                   [{"query": q, "answer": a, "level": str(level), "subject": "Confucius"} for q, a in probes])
    return root
