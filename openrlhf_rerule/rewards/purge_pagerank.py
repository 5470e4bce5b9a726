"""The penalty weights of PURGE's PageRank-weighted reward (github strzar/purge 24d1a3f, ``src/rewards/pagerank.py``,
class ``PageRankWeightedReward``), from the terms' embeddings; the embeddings themselves come from the model to be
unlearned and are computed by ``rerule data purge weights`` (openrlhf_rerule/data/purge_weights.py), so that this
module needs numpy and networkx only, both imported when weights are computed (the reward itself needs neither).

Step by step as theirs (line numbers of pagerank.py at 24d1a3f):
- the forget set: the target first, then the list without exact copies of the target, other repeats kept
  (base.py:53-59 ``load_forget_set``);
- cosine similarity of every pair (sklearn's ``cosine_similarity``: rows divided by their L2 norm, a zero norm
  left as 1, then one matrix product; :65-66), the diagonal set to -1 (:69);
- the threshold is ``np.quantile`` (linear) of the *whole* matrix, diagonal of -1s included (:72); entries below it
  become -1, then (s + 1) / 2, then every nonzero entry 1 (:73-77): an edge joins i != j when s_ij >= threshold;
- an undirected ``networkx`` graph of that 0/1 matrix (:90), nodes renamed to the terms (:93-94; a repeated term
  becomes one node, and an edge between its copies a self-loop), personalized PageRank with all mass on the target
  and networkx's defaults, alpha 0.85, tol 1e-6, 100 iterations (:107-111); the scores min-max normalised to
  [0, 1], all 0 when they are equal (:114-120).
"""

QUANTILE = 0.75  # reward/pagerank.yaml:6 similarity_threshold_quantile (pagerank.py:38 default too)


def forget_set(target: str, terms: list[str]) -> list[str]:
    """The terms the reward scores, in its order: base.py:53-59 ``load_forget_set``."""
    return [target] + [term for term in terms if term != target]


def similarity_edges(embeddings, quantile: float = QUANTILE):
    """The 0/1 adjacency matrix of pagerank.py:62-81 from one embedding per row (a numpy array)."""
    import numpy as np

    x = np.array(embeddings)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))  # sklearn's row_norms and normalize(..., norm="l2")
    norms[norms == 0.0] = 1.0
    x = x / norms[:, np.newaxis]
    similarity = x @ x.T
    similarity[np.diag_indices_from(similarity)] = -1
    threshold = np.quantile(similarity, quantile)
    similarity[similarity < threshold] = -1
    similarity = (similarity + 1) / 2
    similarity[similarity != 0] = 1
    return similarity


def pagerank_weights(target: str, terms: list[str], embeddings, quantile: float = QUANTILE) -> dict:
    """{"terms": the forget set, "weights": one penalty weight per term of it, "scores": the PageRank score of each,
    "edges": the graph's edge count}; `embeddings` holds one row per term of ``forget_set(target, terms)``."""
    import networkx as nx

    order = forget_set(target, terms)
    if len(order) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings for {len(order)} terms of the forget set")
    graph = nx.relabel_nodes(nx.from_numpy_array(similarity_edges(embeddings, quantile)), dict(enumerate(order)))
    personalization = {term: 0.0 for term in order}
    personalization[target] = 1.0
    scores = nx.pagerank(graph, weight="weight", personalization=personalization)
    high, low = max(scores.values()), min(scores.values())
    weights = {term: (score - low) / (high - low) if high > low else 0.0 for term, score in scores.items()}
    return {"terms": order, "weights": [weights[t] for t in order], "scores": [scores[t] for t in order],
            "edges": graph.number_of_edges()}
