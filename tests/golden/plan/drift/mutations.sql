-- Edits made in the Studio after ftctl applied `before/`.
UPDATE prompts SET prompt_template = 'edited in the UI: {instruction} {intent}' WHERE name = 'tickets-prompt';
DELETE FROM configs WHERE type = 'lora_config';
-- A column ftctl does not own (the Studio fills it in): not drift.
UPDATE models SET mlflow_run_id = 'run-42' WHERE name = 'bloom';
