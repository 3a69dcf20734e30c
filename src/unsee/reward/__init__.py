"""Reward models from feedback: r(x) is how acceptable an image is (higher = benign).

Binary labels: y = 1 good (benign), 0 bad (malign). Rankings: rank 1 is the image most
like the concept, i.e. the least acceptable. Ensembles combine as the sum of
log-sigmoids, sum_i log sigmoid(r_i(x)): the log of the product of the members'
probabilities that x is benign (Yoon et al. 2023), which guidance maximises.
"""
