"""Coaching a conversation: exact speaking metrics, a model's written analysis, a report and a chart.

``metrics``  pure: pace, fillers, hedges, pauses, long sentences, questions, each with verbatim quotes
``report``   the report (`coach`, `save_report`) and the prompt a model gets
``chart``    pure: an SVG of pace per turn and filler/hedge counts
"""
