; Python tags: definitions and references (for chunking and the symbol map).

(class_definition
  name: (identifier) @name.definition.class) @definition.class

(function_definition
  name: (identifier) @name.definition.function) @definition.function

(call
  function: [
    (identifier) @name.reference.call
    (attribute
      attribute: (identifier) @name.reference.call)
  ]) @reference.call

(class_definition
  superclasses: (argument_list
    [
      (identifier) @name.reference.class
      (attribute
        attribute: (identifier) @name.reference.class)
    ])) @reference.class

(import_from_statement
  module_name: (dotted_name) @name.reference.import) @reference.import

(import_statement
  name: [
    (dotted_name) @name.reference.import
    (aliased_import
      name: (dotted_name) @name.reference.import)
  ]) @reference.import

(import_from_statement
  name: [
    (dotted_name) @name.reference.import
    (aliased_import
      name: (dotted_name) @name.reference.import)
  ]) @reference.import
