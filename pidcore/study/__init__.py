"""Studies: the seed paper's whole experiment (models x tasks x runs x recipes) as one request.

Takes: a StudyRequest.
Gives: run plans, every part's analyses, the report with its verdicts, figures and exports.
"""
