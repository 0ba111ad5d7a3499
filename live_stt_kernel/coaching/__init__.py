"""Coaching a conversation: exact speaking metrics, a model's written analysis, a report and a chart.

``fragments``  pure: a sentence that the turn-length cap cut in two, joined again for the analysis
``metrics``    pure: pace, fillers, hedges, pauses, long sentences, questions, each with verbatim quotes
``check``      pure: a model's analysis checked against the transcript and the metrics
``report``     the report (`coach`, `save_report`) and the prompt a model gets
``chart``      pure: an SVG of pace per turn and filler/hedge counts
"""
