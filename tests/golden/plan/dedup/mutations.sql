-- A config the Studio created itself (a shipped default): not managed by ftctl.
INSERT INTO configs (id, type, description, config, model_family, is_default) VALUES
  ('5e1b9c2a-8d3f-4c61-9a0e-3f2d7b6c1a01', 'lora_config', 'Default LoRA config',
   '{"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM"}', NULL, 1);
