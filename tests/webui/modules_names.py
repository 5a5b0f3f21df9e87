"""The names of text-generation-webui's own settings (modules/shared.py's
`settings` and the UI elements it saves, 2026), which an extension parameter
must not reuse: "Save settings" skips a parameter whose value equals the
webui's default setting of the same bare name."""

WEBUI_SETTING_NAMES = frozenset(
    """
    show_controls start_with mode chat_style chat-instruct_command prompt-default
    prompt-notebook character name1 name2 user_bio custom_system_message preset
    max_new_tokens max_new_tokens_min max_new_tokens_max prompt_lookup_num_tokens
    max_tokens_second max_updates_second auto_max_new_tokens ban_eos_token
    add_bos_token enable_thinking reasoning_effort skip_special_tokens stream
    static_cache truncation_length seed custom_stopping_strings custom_token_bans
    show_after negative_prompt autoload_model dark_theme default_extensions
    instruction_template_str chat_template_str temperature dynatemp_low
    dynatemp_high dynatemp_exponent smoothing_factor smoothing_curve min_p top_p
    top_k typical_p xtc_threshold xtc_probability epsilon_cutoff eta_cutoff tfs
    top_a top_n_sigma dry_multiplier dry_allowed_length dry_base
    repetition_penalty frequency_penalty presence_penalty
    encoder_repetition_penalty no_repeat_ngram_size repetition_penalty_range
    penalty_alpha guidance_scale mirostat_mode mirostat_tau mirostat_eta
    do_sample dynamic_temperature temperature_last sampler_priority
    dry_sequence_breakers grammar_string
    """.split()
)
